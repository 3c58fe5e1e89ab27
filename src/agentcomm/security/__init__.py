"""Security: identities and signing, the access policy, the boundary guard.

Cross-cutting: reached through hooks the host calls.
"""
