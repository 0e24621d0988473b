# The examples under examples/: the third-party bwrap driver runs its conformance suite in bubblewrap sandboxes.
setup_examples() {
  apt_install bubblewrap
}

setup_examples
