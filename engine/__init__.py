"""The runtime: architectures, tokenizer, chat templates, KV cache, sampling, the Python API."""
