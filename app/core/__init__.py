"""Pure domain: config model, URL rules, errors. No I/O, no Qt."""
