"""Model backends: each turns a `ChatRequest` into a `Reply` or raises a classified error."""
