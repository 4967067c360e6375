// flash_sale: one actor per sale. It owns the sale's id and terms; the live
// counters (remaining, per-user units) live in the SKU's actor, which decides
// every purchase. Once the sale exists it tells the region its SKU, and the
// region sends later purchases straight to the SKU (the terms never change).

#include <caf/all.hpp>

#include "actors/entities.hpp"
#include "protocols/record_codec.hpp"
#include "storage/keys.hpp"

namespace shop {

namespace {

using sale_actor = caf::stateful_actor<flash_sale_state>;

/// Hands the current request to the sale's SKU (through the region) once the
/// sale itself is durable; `make` builds the command from the sale's terms.
template <class Make>
void forward_to_sku(sale_actor* self, const context_ptr& ctx, Make make) {
  auto rp = self->make_response_promise();
  self->state.core.after_commit(
    [self, ctx, rp, make = std::move(make)](const caf::error* err) mutable {
      auto& st = self->state;
      if (err)
        rp.deliver(*err);
      else if (!st.exists)
        rp.deliver(make_error(errc::not_found, "no such flash sale"));
      else
        rp.delegate(ctx->region, make(st.terms));
    });
}

} // namespace

caf::behavior flash_sale_actor(sale_actor* self, context_ptr ctx,
                               std::string sale_id) {
  auto key = keys::entity(keys::sale, sale_id, ctx->shard_count);
  auto receipt_key = keys::child(keys::receipt, sale_id, keys::sale, ctx->shard_count);
  auto load = [self, ctx, key]() -> caf::error {
    std::string raw;
    auto found = ctx->db->get(key, raw);
    if (!found)
      return found.error();
    if (*found) {
      if (!decode(raw, self->state.terms))
        return make_error(errc::internal, "corrupt flash sale record");
      self->state.exists = true;
      // Terms never change: the region may send purchases straight to the SKU.
      self->send(ctx->region, sale_route_atom::value, self->state.terms.id, self->state.terms.sku);
    }
    return caf::none;
  };
  auto running = [self, ctx, key, receipt_key]() -> caf::message_handler {
    return {
      [=](const create_sale& c) -> caf::result<sale_view> {
        auto& st = self->state;
        st.core.touch();
        if (st.exists) {
          // A retry of the creation gets its first answer.
          auto first = st.receipt.first_answer(*ctx->db, receipt_key, c.idempotency_key,
                                               c.requester);
          if (!first)
            return reject_durable<sale_view>(self, std::move(first.error()));
          if (first->empty())
            return reject_durable<sale_view>(
              self, make_error(errc::conflict, "a flash sale with this id exists"));
          sale_view answer;
          if (!decode(*first, answer))
            return reject_durable<sale_view>(
              self, make_error(errc::internal, "corrupt creation receipt of " + st.terms.id));
          if (answer.terms != c.terms)
            return reject_durable<sale_view>(self, reused_key());
          return reply_durable(self, std::move(answer));
        }
        // Checked here, not at the edge, so that a retry of a creation gets
        // its first answer also once the sale has ended.
        if (c.terms.ends_at <= now_millis()) // it could never sell anything
          return reject_durable<sale_view>(
            self, make_error(errc::validation_failed, "field 'ends_at' must be in the future"));
        auto rp = self->make_response_promise<sale_view>();
        auto ticket = st.core.hold([rp](const caf::error& err) mutable { rp.deliver(err); });
        // The SKU registers the terms first (checking its available stock);
        // a crash before our own write is healed by a retry, which the SKU
        // accepts because the terms are the same. `await` keeps a second
        // creation of the same id waiting until this one is decided.
        self->request(ctx->region, ctx->ask_timeout, register_sale{c.terms})
          .await(
            [self, rp, key, receipt_key, ticket, c](sale_view& view) mutable {
              auto& st = self->state;
              st.core.unhold(ticket);
              st.exists = true;
              st.terms = c.terms;
              write_batch ops;
              ops.push_back(put_op(key, encode(c.terms)));
              st.receipt.keep(ops, receipt_key, {c.idempotency_key, c.requester, encode(view)});
              st.core.persist(caf::actor_cast<caf::actor>(self), std::move(ops));
              st.core.after_commit([self, rp, view](const caf::error* err) mutable {
                if (err) {
                  rp.deliver(*err);
                  return;
                }
                auto& t = self->state.terms;
                self->send(self->state.core.ctx->region, sale_route_atom::value, t.id, t.sku);
                rp.deliver(std::move(view));
              });
            },
            [self, rp, ticket](caf::error& err) mutable {
              self->state.core.unhold(ticket);
              rp.deliver(std::move(err));
            });
        return rp;
      },
      [=](const get_sale&) {
        self->state.core.touch();
        forward_to_sku(self, ctx,
                       [](const sale_terms& t) { return get_sale_stock{t.sku, t.id}; });
      },
      [=](purchase& c) {
        self->state.core.touch();
        forward_to_sku(self, ctx, [c = std::move(c)](const sale_terms& t) mutable {
          return purchase_at_sku{t.sku, std::move(c)};
        });
      },
    };
  };
  return activate_entity(self, ctx, entity_kind::sale, std::move(sale_id), load, running,
                         [] { return true; });
}

} // namespace shop
