"""Intake: emission zips → safety checks → manifest → fingerprint → input/ copy → file_tracker → validation."""

# Emission keys under <emission>/ONE_TIME/ are written once each (the API's one-time upload grants): intake
# takes in each such key once, and a second file at a key it already knows is rejected (``upload_reused``).
ONE_TIME = "api"
