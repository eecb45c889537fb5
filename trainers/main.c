#include <stdio.h>
int main(void) { puts("mforge"); return 0; }
