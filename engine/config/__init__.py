"""The mapping configuration: issue types, statuses and fields mapped to shared mapping ids."""
