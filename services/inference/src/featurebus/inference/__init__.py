"""featurebus.inference: plugins on warm Ray actor pools — batch frames in, vector sets out."""
