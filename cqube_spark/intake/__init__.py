"""Intake: emission zips → safety checks → manifest → fingerprint → input/ copy → file_tracker → validation."""
