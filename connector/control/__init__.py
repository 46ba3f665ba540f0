"""Operator controls over Kafka (README "Operator controls"): pauses read from the control topic by
every replica, and each replica's status published to the status topic."""
