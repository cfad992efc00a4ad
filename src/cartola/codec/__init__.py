"""tf.Example and TFRecord bytes, one place (a library call where it is fast enough)."""
