/* stub.c - keeps a library target valid while its directory is empty. */
extern int troop_stub_unused_;
int troop_stub_unused_;
