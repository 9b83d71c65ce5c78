"""One thin function per DVC stage: read its params section, call the layers below, write outputs."""
