#Sourced by the shell tests that need an npm package(tests / openapi / run.sh,
#tests / tokenizer_ref / run.sh); $root is the source tree.
#
#npm_unavailable REASON the test cannot run : FAILS(exit 1) when CI is
#set, else is skipped(exit 77)
#npm_need PACKAGE VERSION PREFIX FILE...
#scripts / npm - pin, or npm_unavailable when node,
#npm or the registry is missing; any other
#failure to install FAILS the test
npm_unavailable()
{
    if
        [-n "${CI:-}"];
    then echo "FAIL: $1 (CI is set, so this test must run; scripts/deps.sh --test installs nodejs and "
              "npm)" exit 1 fi echo "SKIP: $1" exit 77
}

npm_need()
{
    command - v node > / dev / null 2 > &1 || npm_unavailable "node is not installed"
                                                              "$root/scripts/npm-pin"
                                                              "$@" case $
        ? in 0) return 0;
    ;
        3) npm_unavailable "npm is not installed" ;
        ;
        esac npm ping > / dev / null 2 > &1 || npm_unavailable
            "the npm registry cannot be reached" echo
            "FAIL: could not install $1@$2 with npm (see the npm output above)" exit 1
}
