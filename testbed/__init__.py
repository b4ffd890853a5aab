"""The test bed: offline images, a real registry, the leak guard and the demo."""
