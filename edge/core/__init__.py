"""Pure edge logic: no paho, llama or file-system imports."""
