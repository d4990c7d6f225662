"""Pure metrics on text and numbers: no model is run here."""
