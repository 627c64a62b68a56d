"""Access review (ISO/IEC 27001 A.5.15, A.5.18): who is in which room and why, accounts
nobody explains, and who holds admin power — collected from Synapse, stored, rendered."""
