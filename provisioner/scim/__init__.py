"""SCIM 2.0 (RFC 7643/7644) for HR systems: a storage over the Hauspost state store."""
