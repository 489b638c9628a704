"""The SDK's version and the name it reports as ``$lib``."""

VERSION = "0.1.0"
#: The ``$lib`` property of every event this SDK sends.
LIB_NAME = "cairn-python"
