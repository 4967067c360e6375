#pragma once
// Atoms of the actor layer and the registration of every message type.

#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>

namespace shop {

/// journal -> entity: the batch with this sequence number is durable (or failed).
using committed_atom = caf::atom_constant<caf::atom("committed")>;
/// journal -> entity: everything submitted before activation is durable; load now.
using loaded_atom = caf::atom_constant<caf::atom("loaded")>;
/// entity -> self: time to check whether to passivate.
using idle_atom = caf::atom_constant<caf::atom("idle")>;
/// entity -> region: may I passivate? region -> entity: yes (true) / no.
using passivate_atom = caf::atom_constant<caf::atom("passivate")>;
/// sku -> self: reservation expiry timer.
using expiry_atom = caf::atom_constant<caf::atom("expiry")>;
/// cart -> self: the checkout with this number has held the cart's lines too long.
using checkout_atom = caf::atom_constant<caf::atom("checkout")>;
/// sku -> self: look at the next restored reservations' orders (after a load).
using recheck_atom = caf::atom_constant<caf::atom("recheck")>;
/// fault injection: the entity throws (only reachable with --fault-injection).
using crash_atom = caf::atom_constant<caf::atom("crash")>;
/// region: the number of live entities and other figures.
using stats_atom = caf::atom_constant<caf::atom("stats")>;
/// region -> self: end of a quarantine; restart the entity.
using restart_atom = caf::atom_constant<caf::atom("restart")>;
/// flash_sale -> region: purchases of this sale go straight to this SKU.
using sale_route_atom = caf::atom_constant<caf::atom("saleroute")>;
/// password hasher requests.
using hash_atom = caf::atom_constant<caf::atom("hash")>;
using verify_atom = caf::atom_constant<caf::atom("verify")>;

/// Registers every message type under a stable name (needed once messages cross nodes).
void register_shop_types(caf::actor_system_config& cfg);

} // namespace shop
