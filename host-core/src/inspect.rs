//! docker-shaped inspect JSON.
