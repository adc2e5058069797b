"""Example project code: shipped to workers through Ray's working_dir, never baked into the image."""
