#include "actors/atoms.hpp"

#include "actors/entity.hpp"
#include "protocols/types.hpp"

namespace shop {

void register_shop_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<product_record>("shop::product_record");
  cfg.add_message_type<sale_terms>("shop::sale_terms");
  cfg.add_message_type<order_line>("shop::order_line");
  cfg.add_message_type<order_record>("shop::order_record");
  cfg.add_message_type<inventory_view>("shop::inventory_view");
  cfg.add_message_type<product_view>("shop::product_view");
  cfg.add_message_type<sale_view>("shop::sale_view");
  cfg.add_message_type<user_view>("shop::user_view");
  cfg.add_message_type<purchase_result>("shop::purchase_result");
  cfg.add_message_type<create_product>("shop::create_product");
  cfg.add_message_type<get_product>("shop::get_product");
  cfg.add_message_type<update_product>("shop::update_product");
  cfg.add_message_type<restock>("shop::restock");
  cfg.add_message_type<get_inventory>("shop::get_inventory");
  cfg.add_message_type<create_sale>("shop::create_sale");
  cfg.add_message_type<get_sale>("shop::get_sale");
  cfg.add_message_type<purchase>("shop::purchase");
  cfg.add_message_type<register_sale>("shop::register_sale");
  cfg.add_message_type<get_sale_stock>("shop::get_sale_stock");
  cfg.add_message_type<purchase_at_sku>("shop::purchase_at_sku");
  cfg.add_message_type<get_order>("shop::get_order");
  cfg.add_message_type<cancel_order>("shop::cancel_order");
  cfg.add_message_type<expire_order>("shop::expire_order");
  cfg.add_message_type<release_reservation>("shop::release_reservation");
  cfg.add_message_type<recheck_reservation>("shop::recheck_reservation");
  cfg.add_message_type<register_user>("shop::register_user");
  cfg.add_message_type<login_user>("shop::login_user");
  cfg.add_message_type<get_user>("shop::get_user");
  cfg.add_message_type<cart_record>("shop::cart_record");
  cfg.add_message_type<cart_view>("shop::cart_view");
  cfg.add_message_type<product_page>("shop::product_page");
  cfg.add_message_type<payment_view>("shop::payment_view");
  cfg.add_message_type<list_products>("shop::list_products");
  cfg.add_message_type<get_cart>("shop::get_cart");
  cfg.add_message_type<set_cart_item>("shop::set_cart_item");
  cfg.add_message_type<clear_cart>("shop::clear_cart");
  cfg.add_message_type<take_cart>("shop::take_cart");
  cfg.add_message_type<end_cart_checkout>("shop::end_cart_checkout");
  cfg.add_message_type<checkout_under_way>("shop::checkout_under_way");
  cfg.add_message_type<checkout_progress>("shop::checkout_progress");
  cfg.add_message_type<checkout>("shop::checkout");
  cfg.add_message_type<place_order>("shop::place_order");
  cfg.add_message_type<reserve_stock>("shop::reserve_stock");
  cfg.add_message_type<confirm_sale>("shop::confirm_sale");
  cfg.add_message_type<pay_order>("shop::pay_order");
  cfg.add_message_type<payment_callback>("shop::payment_callback");
  cfg.add_message_type<crash_entity>("shop::crash_entity");
  cfg.add_message_type<region_stats>("shop::region_stats");
}

} // namespace shop
