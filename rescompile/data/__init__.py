"""Reading data: CIFAR-10/100 and image folders into arrays, the user's images into tensors."""
