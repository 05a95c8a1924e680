"""The message pipeline: detect tracker changes, send, receive, apply in order, control messages,
operator actions and the start-up reconcile. `core.Pipeline` is what callers use."""
