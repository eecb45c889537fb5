/* `mforge serve`: the bundled socket server. HTTP/1.1 with JSON bodies on plain TCP, one
 * event-loop thread for every socket, one worker per model running continuous batches.
 * See serving/server.c for the connection side and serving/sched.c for the batching. */
#ifndef MF_SERVE_H
#define MF_SERVE_H

/* The command: parses its flags, serves until SIGTERM/SIGINT, returns the exit code
 * (0 after a graceful stop; user mistakes 2 with a one-line "mforge: error: ...").
 * argv[0] is "serve". */
int mf_cmd_serve(int argc, char **argv);

#endif
