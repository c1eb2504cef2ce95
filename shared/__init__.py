"""Casewire's common package: event contracts and the plumbing every service shares."""
