"""The only code that knows file formats: checkpoint folders and train state, released SEDD/MDLM, HF folders, GGUF."""
