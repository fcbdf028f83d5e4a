import os

# Offline everywhere: hub look-ups would hang for minutes or return placeholders (docs/traps.md).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
