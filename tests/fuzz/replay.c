/*  Replays the fuzz harness over its seed corpus (and any regression inputs
    kept beside it) under the ordinary ASan+UBSan test build, so every
    `make test` re-checks what the fuzzer found interesting without needing
    clang. Usage: fuzz_replay <dir>... ; exits non-zero if a file cannot be
    read (a crash ends the process on its own). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerInitialize(int *argc, char ***argv);
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
s_replay_file(const char *path)
{
    FILE *file = fopen(path, "rb");
    if (!file) {
        perror(path);
        return -1;
    }
    uint8_t *data = malloc(1 << 20);
    size_t size = data ? fread(data, 1, 1 << 20, file) : 0;
    fclose(file);
    if (!data) {
        return -1;
    }
    LLVMFuzzerTestOneInput(data, size);
    //  Every prefix too: truncation is the commonest malformation.
    for (size_t n = 0; n < size; n++) {
        LLVMFuzzerTestOneInput(data, n);
    }
    free(data);
    return 0;
}

int
main(int argc, char **argv)
{
    LLVMFuzzerInitialize(&argc, &argv);
    int files = 0;
    for (int i = 1; i < argc; i++) {
        DIR *dir = opendir(argv[i]);
        if (!dir) {
            perror(argv[i]);
            return 1;
        }
        struct dirent *entry;
        while ((entry = readdir(dir))) {
            if (entry->d_name[0] == '.') {
                continue;
            }
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], entry->d_name);
            if (s_replay_file(path) != 0) {
                closedir(dir);
                return 1;
            }
            files++;
        }
        closedir(dir);
    }
    printf("fuzz_replay: %d inputs replayed, every prefix included\n", files);
    return files > 0 ? 0 : 1;
}
