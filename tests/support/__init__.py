"""Test helpers shared by every layer: images, configs, and the real servers tests run."""
