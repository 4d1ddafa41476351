"""The input stage shared by training and serving: datasets (CIFAR tarballs, image folders,
TFRecord shards), image decoding, class names, the tf.data pipelines and streams, and scoring."""
