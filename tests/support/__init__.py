"""Test helpers shared by every layer: images, configs, and the real servers tests run
(Redis, the gateway, a fake upstream and a fake identity provider).
"""
