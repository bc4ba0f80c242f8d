"""The WonderNest platform: config, model and renderers, and the target components."""
