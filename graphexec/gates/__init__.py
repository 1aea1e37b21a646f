"""Built-in gates. They reach the registry through graphexec's own entry points, like any plugin."""
