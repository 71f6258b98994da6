#!/usr/bin/perl
# The oracle of test_parallel_options.py: GNU parallel's own option table, read from the
# installed program, given to Getopt::Long configured as GNU parallel configures it.
#   perl parallel_getopt_oracle.pl PROGRAM --table   the table: [[spec, "SCALAR"|"ARRAY"|"HASH"], ...]
#   perl parallel_getopt_oracle.pl PROGRAM < cases   cases: a JSON list of argv lists; for each:
#     {"options": [[name, value], ...], "rest": [...], "problems": [Getopt::Long's warnings]}
use strict;
use warnings;
use Getopt::Long qw(GetOptionsFromArray);
use JSON::PP;

my $program = shift or die "usage: $0 PROGRAM [--table]\n";
open(my $fh, "<", $program) or die "$program: $!\n";
my $text = do { local $/; <$fh> };
$text =~ /^(sub options_completion_hash\(\) \{.*?^\})$/ms or die "$program: no options_completion_hash\n";
{
    no strict;
    no warnings;
    eval $1;
    die $@ if $@;
}
my %table = options_completion_hash();
my @specs = map { (my $spec = $_) =~ s/\[.*//s; [$spec, ref $table{$_}] } sort keys %table;
if (@ARGV and $ARGV[0] eq "--table") {
    print encode_json(\@specs);
    exit 0;
}

Getopt::Long::Configure("bundling", "require_order");
my @results;
for my $argv (@{ decode_json(do { local $/; <STDIN> }) }) {
    my (@options, @problems, @optionlist);
    for (@specs) {
        my ($spec, $ref) = @$_;
        if ($ref eq "HASH") {
            tie my %pairs, "Pairs", \@options;
            push @optionlist, $spec, \%pairs;
        } else {
            push @optionlist, $spec, sub { my ($name, $value) = @_; push @options, ["$name", "$value"] };
        }
    }
    local $SIG{__WARN__} = sub { my $message = shift; chomp $message; push @problems, $message };
    my @words = @$argv;
    GetOptionsFromArray(\@words, @optionlist);
    push @results, { options => \@options, rest => \@words, problems => \@problems };
}
print encode_json(\@results);

package Pairs;  # a hash option's NAME=VALUE, recorded in order
sub TIEHASH { my ($class, $seen) = @_; return bless { seen => $seen }, $class }
sub STORE { my ($self, $key, $value) = @_; push @{ $self->{seen} }, ["template", "$key=$value"] }
sub FETCH { return undef }
sub EXISTS { return 0 }
sub DELETE { }
sub CLEAR { }
sub FIRSTKEY { return undef }
sub NEXTKEY { return undef }
