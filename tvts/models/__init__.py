"""TVTS models: the video ViT on timm blocks, the text encoder, the sort head, and TVTS itself."""
