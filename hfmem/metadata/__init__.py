"""metadata: what the repository says about the model — config.json and safetensors headers. No torch."""
