"""bugsink-sync: Bugsink errors to Gitea issues."""
