"""Shopping: the catalog, the cart, order creation and the shopper's order page."""
