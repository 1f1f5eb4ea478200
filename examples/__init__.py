"""Example Stepline apps (``stepline dev examples.shop:app``)."""
