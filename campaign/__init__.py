"""campaign: mail-merge letter campaigns, from a spreadsheet to personalised PDF letters and emails."""

__version__ = "0.1.0"
