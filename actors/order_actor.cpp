// order: one actor per order; the single arbiter of the order's status, so a
// cancel and an expiry that race are decided here, once.

#include <caf/all.hpp>

#include "actors/entities.hpp"
#include "protocols/record_codec.hpp"
#include "storage/keys.hpp"

namespace shop {

namespace {

bool visible_to(const order_state& st, const std::string& requester, bool admin) {
  return st.exists && (admin || st.order.user_id == requester);
}

} // namespace

caf::behavior order_actor(caf::stateful_actor<order_state>* self, context_ptr ctx,
                          std::string order_id) {
  auto key = keys::entity(keys::order, order_id, ctx->shard_count);
  auto load = [self, ctx, key]() -> caf::error {
    std::string raw;
    auto found = ctx->db->get(key, raw);
    if (!found)
      return found.error();
    if (*found) {
      if (!decode(raw, self->state.order))
        return make_error(errc::internal, "corrupt order record");
      self->state.exists = true;
    }
    return caf::none;
  };
  auto set_status = [self, ctx, key](order_status s) {
    auto& st = self->state;
    st.order.status = s;
    st.order.updated_at = now_millis();
    write_batch ops;
    ops.push_back(put_op(key, encode(st.order)));
    st.core.persist(caf::actor_cast<caf::actor>(self), std::move(ops));
  };
  auto running = [self, ctx, set_status]() -> caf::message_handler {
    return {
      [=](const get_order& c) -> caf::result<order_record> {
        auto& st = self->state;
        st.core.touch();
        // Another user's order answers 404, so ids cannot be probed.
        if (!visible_to(st, c.requester, c.requester_is_admin))
          return reject_durable<order_record>(self, make_error(errc::not_found, "no such order"));
        return reply_durable(self, st.order);
      },
      [=](const cancel_order& c) -> caf::result<order_record> {
        auto& st = self->state;
        st.core.touch();
        if (!visible_to(st, c.requester, c.requester_is_admin))
          return reject_durable<order_record>(self, make_error(errc::not_found, "no such order"));
        if (st.order.status != order_status::pending_payment)
          return reject_durable<order_record>(
            self, make_error(errc::conflict,
                             std::string{"the order is "} + to_string(st.order.status)));
        set_status(order_status::cancelled);
        // Once `cancelled` is durable, release the units and answer. The
        // release reaches the SKU (through the region) before any request the
        // client sends after our answer; if it is lost, the SKU's own expiry
        // timer asks us and releases the units then.
        auto sku = st.order.items.front().sku;
        st.core.after_commit([self, ctx, sku, id = st.order.order_id](const caf::error* err) {
          if (!err) // anonymous: the SKU's acknowledgement has nowhere to go
            caf::anon_send(ctx->region, release_reservation{sku, id});
        });
        return reply_durable(self, st.order);
      },
      [=](const expire_order&) -> caf::result<uint8_t> {
        auto& st = self->state;
        st.core.touch();
        if (!st.exists) // an orphaned reservation: let the SKU release it
          return reply_durable(self, static_cast<uint8_t>(order_status::expired));
        if (st.order.status == order_status::pending_payment)
          set_status(order_status::expired);
        return reply_durable(self, static_cast<uint8_t>(st.order.status));
      },
    };
  };
  return activate_entity(self, ctx, entity_kind::order, std::move(order_id), load, running,
                         [] { return true; });
}

} // namespace shop
