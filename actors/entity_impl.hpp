#pragma once
// Template part of entity.hpp; include entity.hpp instead.

#include <chrono>
#include <exception>
#include <stdexcept>

#include <caf/actor_cast.hpp>
#include <caf/message_handler.hpp>
#include <caf/scheduled_actor.hpp>
#include <caf/send.hpp>
#include <caf/sec.hpp>
#include <caf/skip.hpp>

#include <spdlog/spdlog.h>

#include "protocols/exceptions.hpp"

namespace shop {

namespace detail {

inline std::chrono::milliseconds idle_check_interval(const entity_context& ctx) {
  auto quarter = ctx.passivate_after / 4;
  return std::max(quarter, std::chrono::milliseconds{250});
}

template <class State>
void maybe_passivate(caf::stateful_actor<State>* self, const std::function<bool()>& can_passivate,
                     std::shared_ptr<bool> asking) {
  auto& core = self->state.core;
  const auto& ctx = *core.ctx;
  self->delayed_send(self, idle_check_interval(ctx), idle_atom::value);
  if (*asking || core.idle_for() < ctx.passivate_after || !core.quiescent() || core.holding()
      || !can_passivate())
    return;
  *asking = true;
  self
    ->request(ctx.region, ctx.ask_timeout, passivate_atom::value,
              static_cast<uint8_t>(core.kind), core.id, core.processed())
    .then(
      [=](bool granted) {
        *asking = false;
        if (granted)
          self->quit(); // normal exit: the region already forgot this activation
      },
      [=](caf::error& err) {
        *asking = false;
        if (err == caf::sec::request_receiver_down)
          self->quit(); // the region is gone (shutdown): nothing can reach us
      });
}

} // namespace detail

template <class State>
caf::behavior
activate_entity(caf::stateful_actor<State>* self, context_ptr ctx, entity_kind kind,
                std::string id, std::function<caf::error()> load,
                std::function<caf::message_handler()> running, std::function<bool()> can_passivate) {
  auto& core = self->state.core;
  core.ctx = ctx;
  core.kind = kind;
  core.id = std::move(id);
  // A crash answers every held request with its real outcome (none waits
  // forever), then stops the actor with the exception as reason; the region
  // restarts it from storage.
  self->set_exception_handler([self](std::exception_ptr& eptr) -> caf::error {
    self->state.core.settle_before_crash();
    return caf::make_error(caf::sec::runtime_error, exception_text(eptr));
  });
  // A stray error message (not the answer to one of our requests) must not
  // stop an entity: log it and carry on.
  self->set_error_handler([self](caf::error& err) {
    spdlog::warn("{} {}: ignored an unexpected error message: {}",
                 to_string(self->state.core.kind), self->state.core.id, caf::to_string(err));
  });
  self->set_default_handler(caf::skip); // hold commands until loaded
  auto handle = caf::actor_cast<caf::actor>(self);
  ctx->journal->barrier([handle](bool) { caf::anon_send(handle, loaded_atom::value); });
  auto asking = std::make_shared<bool>(false);
  caf::message_handler common{
    [self](committed_atom, uint64_t seq, bool ok) {
      if (ok) {
        self->state.core.on_commit_notice();
        return;
      }
      self->state.core.settle_after_failure();
      self->quit(make_error(errc::unavailable, "a commit failed; restarting from storage"));
    },
    [self, can_passivate, asking](idle_atom) {
      detail::maybe_passivate(self, can_passivate, asking);
    },
    [self](const crash_entity&) -> caf::result<bool> {
      self->state.core.touch();
      throw std::runtime_error("fault injection: crash requested for " + self->state.core.id);
    },
  };
  return {
    [self, load, running, common](loaded_atom) {
      auto loading = std::chrono::steady_clock::now();
      if (auto err = load()) {
        self->quit(err);
        return;
      }
      // A slow load (a long ledger, a storage hiccup) delays every request
      // held meanwhile: say so, for operators timing a restart.
      auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - loading);
      if (took >= std::chrono::milliseconds{100})
        spdlog::info("{} {}: loaded from storage in {} ms", to_string(self->state.core.kind),
                     self->state.core.id, took.count());
      self->set_default_handler(caf::print_and_drop);
      self->become(caf::behavior{running().or_else(common)});
      self->delayed_send(self, detail::idle_check_interval(*self->state.core.ctx),
                         idle_atom::value);
    },
  };
}

} // namespace shop
