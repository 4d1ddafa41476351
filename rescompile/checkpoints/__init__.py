"""PyTorch checkpoints (torchvision, timm) read without torch and without running code: safetensors
and torch's zip `.pth` files become numpy state dicts, mapped onto the IR by naming convention."""
