"""Image models: the NSFW classifier (a torch port of nsfwjs's MobileNetV2) and its engine."""
