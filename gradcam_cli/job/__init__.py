"""Jobs: inputs and where their outputs go, decoding, batching, the manifest, records."""
