"""Data protection you can prove (GDPR Art. 15, 17; ISO/IEC 27001 A.5.34): the access
export, erasure with pseudonymised records, legal holds and the leaver's data timeline."""
