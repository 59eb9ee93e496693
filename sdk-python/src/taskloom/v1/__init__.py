"""Code generated from proto/taskloom/v1 by buf generate (see buf.gen.yaml)."""
