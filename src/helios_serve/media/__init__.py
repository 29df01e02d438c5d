"""Media I/O: safe image and video decoding, streaming MP4/NPY writers, thumbnails."""
