"""The WonderNest platform: config, spec and renderers, and the target components."""
