def verify_or_raise(plan, image_id): pass
