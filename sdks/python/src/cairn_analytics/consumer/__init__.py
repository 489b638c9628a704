"""The background side of the client: the bounded queue and the thread that sends batches."""

from .worker import Worker

__all__ = ["Worker"]
