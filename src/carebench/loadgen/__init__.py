"""Load generator: drives traffic at a carebench server and measures it."""
