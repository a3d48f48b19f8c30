"""ImageNet networks on real photos: the models, the photos they are shown, and the tools that run on them."""
